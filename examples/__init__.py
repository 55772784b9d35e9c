"""Example saga packages shipped with Baton (data plus the participants that serve them)."""
