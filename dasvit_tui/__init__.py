"""dasvit's front end: the Typer CLI and the Textual monitor. It talks to the engine only through run directories."""
