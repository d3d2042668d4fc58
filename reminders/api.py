"""Reminders JSON API: list the user's reminders, cancel one."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from magicmirror.openapi import api_errors

from .models import Reminder
from .selectors import reminder_list, user_time_zone
from .services import reminder_cancel

NOT_FOUND = {404: "`reminder_not_found`: not one of your reminders."}


class ReminderOutput(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()
    due_at = serializers.DateTimeField(help_text="When it is due (UTC).")
    state = serializers.ChoiceField(choices=Reminder.State.values)
    created_at = serializers.DateTimeField()
    fired_at = serializers.DateTimeField(allow_null=True, help_text="When it fired; null until then.")
    conversation_id = serializers.IntegerField(allow_null=True, help_text="The conversation it is said in.")
    message_id = serializers.IntegerField(allow_null=True, help_text="The message that delivered it, once fired.")


class ReminderListOutput(serializers.Serializer):
    reminders = ReminderOutput(many=True)
    time_zone = serializers.CharField(help_text="Your time zone, in which the assistant reads local times.")


class ReminderListQuery(serializers.Serializer):
    state = serializers.MultipleChoiceField(choices=Reminder.State.values, required=False)
    fired_after = serializers.DateTimeField(required=False)


class ReminderListApi(APIView):
    @extend_schema(
        operation_id="reminders_list",
        parameters=[
            OpenApiParameter(
                "state", str, many=True, enum=Reminder.State.values, description="Only these states (repeatable)."
            ),
            OpenApiParameter(
                "fired_after", OpenApiTypes.DATETIME, description="Only reminders fired after this moment (ISO 8601)."
            ),
        ],
        responses={200: ReminderListOutput, **api_errors({400: "`invalid`: a bad state or moment."})},
        summary="My reminders, soonest first",
    )
    def get(self, request):
        query = ReminderListQuery(
            data={
                "state": request.query_params.getlist("state"),
                # Present but empty is an invalid moment (400), not "no filter".
                **(
                    {"fired_after": request.query_params["fired_after"]}
                    if "fired_after" in request.query_params
                    else {}
                ),
            }
        )
        query.is_valid(raise_exception=True)
        rows = reminder_list(user=request.user, states=query.validated_data.get("state"))
        if "fired_after" in query.validated_data:
            rows = rows.filter(fired_at__gt=query.validated_data["fired_after"])
        return Response(
            {
                "reminders": ReminderOutput(rows[:200], many=True).data,
                "time_zone": user_time_zone(user=request.user),
            }
        )


class ReminderDetailApi(APIView):
    @extend_schema(
        operation_id="reminders_cancel",
        responses={
            200: ReminderOutput,
            **api_errors({**NOT_FOUND, 409: "`reminder_not_pending`: it has fired or was cancelled already."}),
        },
        summary="Cancel a reminder",
    )
    def delete(self, request, reminder_id):
        reminder = reminder_cancel(user=request.user, reminder_id=reminder_id)
        return Response(ReminderOutput(reminder).data, status=status.HTTP_200_OK)
