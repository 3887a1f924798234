"""`dasvit search` and `dasvit approve`."""
