"""Models as loss closures with offline data (DESIGN §4). Not built yet: see the problems issues."""
