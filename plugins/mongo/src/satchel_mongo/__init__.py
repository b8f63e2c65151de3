"""satchel-mongo."""
