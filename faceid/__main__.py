from faceid.cli import run

run(prog_name="faceid")
