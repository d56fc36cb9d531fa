"""Built-in approval channels. Each module is a pluggy plugin listed in
``veto_core.plugins.BUILTIN_PLUGINS``, registered exactly like a third-party one."""
