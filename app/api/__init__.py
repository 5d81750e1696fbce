"""HTTP routes, one router per resource; dependency aliases in deps.py."""
