"""The domain core: lifecycle, events, incidents and deadline arithmetic. No I/O, no clock."""
