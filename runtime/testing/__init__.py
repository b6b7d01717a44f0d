"""Testing routing scripts with SIPp: scenario folders, `cfgscript test`, a pytest plugin,
script coverage. See runner.py (the command), plugin.py (pytest), scenario.py (the folder
format) and coverage.py."""
