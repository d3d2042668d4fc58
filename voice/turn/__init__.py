"""End of turn: has the user finished speaking? (Smart Turn v3.2, an audio model, see smart_turn.py)."""
