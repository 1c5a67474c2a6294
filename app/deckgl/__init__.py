"""Offline deck.gl maps: the bundle route, the Dash component, layer specs and colours."""
