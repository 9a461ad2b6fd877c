"""Reading EventBridge events: what each one means for rotor."""
