"""What the chat app announces to other apps, which listen without chat
importing them (notifications connects to ``message_stored``).

These are Django signals sent by the chat services; a receiver that raises
fails the service's transaction, so receivers must only do work that belongs
in it.
"""

from django.dispatch import Signal

# Sent once per new message, inside the transaction that stores it (sender:
# the Message class; keyword ``message``: the stored Message, with its room).
# A receiver's writes commit with the message or not at all.
message_stored = Signal()

# Sent once per edit, inside its transaction (sender: the Message class;
# keywords ``message``, the edited Message, and ``old_text``, its former text):
# a mention added by the edit notifies as a new mention would.
message_edited = Signal()
