"""Built-in northbound plugins, each registered through the btms_gateway entry points."""
