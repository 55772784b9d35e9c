"""Who may say what: Ed25519 signatures on messages (``signing``) and AES-GCM sealing of
sensitive fields at rest (``sealing``)."""
