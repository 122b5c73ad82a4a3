"""The pure supervision core: specs, events in, actions out. No OS access."""
