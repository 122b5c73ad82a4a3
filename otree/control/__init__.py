"""The control socket: sans-IO protocol, the server in the loop, the client, socket placement."""
