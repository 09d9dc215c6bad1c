from faceid.cli import app

app(prog_name="faceid")
