from app import ui
ctx = ui.page("draw")
