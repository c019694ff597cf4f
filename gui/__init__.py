"""The window: widgets and models over the service. Only the GUI thread touches them."""
