"""Bedside devices streaming into the server over MQTT: their mappings and the bridge."""
