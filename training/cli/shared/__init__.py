"""What the commands share: the command protocol, options, values, inputs, settings."""
