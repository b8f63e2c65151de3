"""satchel-database."""
