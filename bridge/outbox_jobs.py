"""Kinds of outbox job and their payloads. The worker (bridge/outbox.py) carries them out."""

from __future__ import annotations

OPEN_THREAD = "open_thread"  # {"chat_id"}: root message in the channel, thread, members
ADD_MEMBER = "add_member"  # {"chat_id", "user_id"}: add a teacher/tutor to the thread's chat
POST_MESSAGE = "post_message"  # {"message_id"}: post a web message into the thread
EDIT_MESSAGE = "edit_message"  # {"message_id"}: follow an edit
DELETE_MESSAGE = "delete_message"  # {"message_id"}: follow a deletion
SEND_TEXT = "send_text"  # {"entity_type", "entity_id", "content"}: a bot answer
