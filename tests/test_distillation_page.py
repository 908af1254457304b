"""AppTest tests of the Distillation page (views/distillation.py) on the shipped digits zoo. The fidelity table is
checked against agreement and KL computed independently (scipy) from the checkpoints' extracted logits."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy
from streamlit.testing.v1 import AppTest

from calibviz.backend import predict_entry
from calibviz.zoo import list_zoo
from tests.conftest import open_page, plotly_figures

PAGE = "views/distillation.py"
CELL = re.compile(r"^(-?\d+\.\d+)\s\[(-?\d+\.\d+),\s(-?\d+\.\d+)\]$")


@pytest.fixture
def app() -> AppTest:
    at = open_page(PAGE)
    at.sidebar.radio(key="dataset").set_value("digits").run()
    assert not at.exception, at.exception
    return at


def _value(cell: str) -> float:
    m = CELL.match(str(cell))
    assert m, cell
    return float(m.group(1))


def _students(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["student"])


def test_students_of_the_ce_teacher_and_their_fidelity(app: AppTest) -> None:
    assert app.selectbox(key="distillation_teacher").value == "digits/ce"
    students = _students(app)
    assert "KD student of CE, T=1" in students and "KD student of CE, T=4" in students
    assert not any("of LS" in s for s in students)
    df = app.dataframe[0].value.set_index("student")
    zoo = {e.recipe: e for e in list_zoo() if e.dataset == "digits"}
    for split in ("train", "test"):
        t = predict_entry(zoo["ce"], f"digits:{split}")
        s = predict_entry(zoo["kd_ce_t4"], f"digits:{split}")
        pt, ps = softmax(t.logits.astype(np.float64), 1), softmax(s.logits.astype(np.float64), 1)
        row = df.loc["KD student of CE, T=4"]
        assert _value(row[f"agreement ({split})"]) == pytest.approx((pt.argmax(1) == ps.argmax(1)).mean(), abs=1e-4)
        assert _value(row[f"KL ({split})"]) == pytest.approx(entropy(pt, ps, axis=1).mean(), abs=1e-4)
    assert df.loc["KD student of CE, T=4", "how"] == "offline KD, T = 4"
    figs = plotly_figures(app)
    assert len(figs) == 4
    students_fig, _, _, sweep = figs
    assert list(students_fig["data"][0]["y"]) == students
    legend = {t["name"] for t in sweep["data"] if t.get("showlegend") is not False}
    assert {"CE teacher", "LS α=0.1"} <= legend  # both teachers' temperature sweeps, side by side
    claims = app.table[0].value
    assert len(claims) == 5 and set(claims["verdict"]) <= {"agrees", "in part", "does not agree", "not shown",
                                                     "not measurable"}


def test_switching_teacher_and_adding_a_student(app: AppTest) -> None:
    before = plotly_figures(app)[0]
    app.selectbox(key="distillation_teacher").set_value("digits/ls").run()
    assert not app.exception, app.exception
    students = _students(app)
    assert students and all("of LS" in s for s in students), students
    assert plotly_figures(app)[0] != before
    key = "distillation_students_digits/ls"
    app.multiselect(key=key).set_value([*app.multiselect(key=key).value, "digits/mixup"]).run()
    assert not app.exception, app.exception
    df = app.dataframe[0].value.set_index("student")
    assert df.loc["Mixup α=0.4", "how"] == "not from the cards"
    app.selectbox(key="distillation_pair").set_value("digits/mixup").run()
    assert not app.exception, app.exception
    scatter = plotly_figures(app)[2]
    assert "Mixup" in scatter["layout"]["yaxis"]["title"]["text"]


def test_a_teacher_without_students_says_so(app: AppTest) -> None:
    app.selectbox(key="distillation_teacher").set_value("digits/ce").run()
    app.multiselect(key="distillation_students_digits/ce").set_value([]).run()
    assert not app.exception, app.exception
    assert any("No students selected" in i.value for i in app.info)
