"""Reports, without torch: one study folder to its page (render.py) built from blocks (blocks.py) and figures
(plots.py): the conclusion (conclusion.py), the verdict table (verdicts.py), the measured sections (measured.py), a
search's section (search_section.py), the controls (controls_block.py), the A/A (aa_block.py), a confirmation beside
its original (confirm_block.py), the pre-registration (registration_block.py); shipping a study's inputs (ship.py)
and the `python -m study.report` command (__main__.py)."""
