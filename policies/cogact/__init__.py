"""CogACT release checkpoints: the key mapping (``key_rules``), reading a release (``release_reader``, through
``mapped_checkpoint``) and writing one (``release_writer``). Imports nothing eagerly."""
