"""Small services that publish events to the stream."""
