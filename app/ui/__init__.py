"""The web app's presentation: Jinja2 templates, static files (htmx vendored), SVG plots, PCA."""
