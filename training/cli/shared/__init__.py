"""What the commands share: the command protocol, option groups and values, the data read,
the settings and the publish call."""
