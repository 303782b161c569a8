"""The `report` stage: one self-contained HTML page per run (`html_page`)."""
