import re, time
import nbformat, pytest
pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
SRC = '''
import threading, time, math
import ipywidgets as w
import plotly.graph_objects as go
fig = go.FigureWidget(layout=dict(height=300, width=500, title="probe"))
fig.add_scatter(x=[], y=[], name="run-a", mode="lines")
tog = w.ToggleButtons(options=["linear", "log"], value="linear", description="y")
tog.observe(lambda c: setattr(fig.layout.yaxis, "type", c["new"]), names="value")
button = w.Button(description="Start ticking")
def tick():
    for i in range(1, 41):
        time.sleep(0.1)
        with fig.batch_update():
            fig.data[0].x = list(range(i))
            fig.data[0].y = [50*math.exp(-k/5) for k in range(i)]
button.on_click(lambda _b: threading.Thread(target=tick, daemon=True).start())
w.VBox([button, tog, fig])
'''
def test_plotly(lab, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SRC), nbformat.v4.new_code_cell("import plotly.graph_objects as go\ngo.Figure(go.Scatter(x=[1,2,3], y=[1,10,100], name='static'))")]
    p = tmp_path / "probe.ipynb"; nbformat.write(nb, p)
    lab.open(lab.add_notebook(p, subdir="probe"))
    lab.run_all(timeout=60)
    page = lab.page
    time.sleep(3)
    lab.shot("rendered")
    page.get_by_role("button", name="Start ticking").click()
    ticks = []
    for _ in range(60):
        t = lab.notebook.locator(".js-plotly-plot").first.locator(".ytick text").all_inner_texts()
        ticks.append(tuple(t))
        time.sleep(0.1)
    lab.shot("ticked")
    print("distinct tick sets", len(set(ticks)), ticks[-1])
    page.get_by_role("button", name="log").click()
    time.sleep(2)
    print("after log", lab.notebook.locator(".js-plotly-plot").first.locator(".ytick text").all_inner_texts())
    lab.shot("log")
    print("plots", lab.notebook.locator(".js-plotly-plot").count())
    print("\n".join(lab.console))
