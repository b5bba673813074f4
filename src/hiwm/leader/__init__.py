"""Leader arms: servo bus protocols, calibration, action mapping and a servo emulator."""
