"""vlart's shipped configs, installed as the data-only package ``vlart_configs`` (read with
``runtime.resources.config_file``)."""
