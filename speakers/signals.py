"""Delete a speaker's stored audio file when its row goes, including through cascades (a deleted user).

Cascade deletes never call Model.delete(), so this has to be a signal. The file goes only once
the transaction commits, so a rolled-back delete keeps its audio.
"""

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import Speaker


def _delete_file_on_commit(field_file):
    if not field_file:
        return
    storage, name = field_file.storage, field_file.name
    transaction.on_commit(lambda: storage.delete(name))


@receiver(post_delete, sender=Speaker)
def speaker_deleted(sender, instance, **kwargs):
    _delete_file_on_commit(instance.audio)
