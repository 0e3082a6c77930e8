"""vlart's shipped configs, installed as the data-only package ``vlart_configs`` (read with
``runtime.core.resources.config_file``)."""
