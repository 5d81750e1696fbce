"""Domain logic behind the routes; keyword-only, never imports fastapi."""
