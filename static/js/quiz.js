// "Which face is real?": load a pair, let the player pick, reveal the truth and the model's scores.
"use strict";
(function () {
  const root = document.getElementById("quiz");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const roundForm = $("round-form");
  let roundId = null;

  function setScore(score) {
    $("quiz-score").textContent = "You " + score.player + " · Model " + score.model + " · Rounds " + score.rounds;
  }

  async function newRound() {
    $("quiz-result").textContent = "";
    $("quiz-error").textContent = "";
    $("quiz-next").hidden = true;
    ["a", "b"].forEach((s) => {
      $("pick-" + s).disabled = true;
      $("pick-" + s).className = "pick";
      $("score-" + s).textContent = "";
    });
    const answer = await Unmask.postForm(root.dataset.roundUrl, new FormData(roundForm));
    if (!answer.ok) {
      $("quiz-error").textContent = Unmask.errorMessage(answer.body);
      return;
    }
    roundId = answer.body.round;
    let loaded = 0;
    ["a", "b"].forEach((s) => {
      const img = $("img-" + s);
      img.onload = () => {
        loaded += 1;
        if (loaded === 2) {
          $("pick-a").disabled = false;
          $("pick-b").disabled = false;
          root.dataset.ready = "1";
        }
      };
      img.src = answer.body.images[s];
    });
  }

  async function pick(side) {
    root.dataset.ready = "";
    $("pick-a").disabled = true;
    $("pick-b").disabled = true;
    $("quiz-result").textContent = "Checking…";
    const data = new FormData(roundForm);
    data.append("round", roundId);
    data.append("pick", side);
    const answer = await Unmask.postForm(root.dataset.answerUrl, data);
    if (!answer.ok) {
      $("quiz-error").textContent = Unmask.errorMessage(answer.body);
      $("quiz-next").hidden = false;
      return;
    }
    const r = answer.body;
    ["a", "b"].forEach((s) => {
      $("pick-" + s).className = "pick " + (s === r.real ? "is-real" : "is-fake");
      const p = r.scores[s];
      const v = (r.verdicts || {})[s]; // the library's rule: real, uncertain or fake
      const said = v === "uncertain" ? ", cannot tell" : v ? ", says " + v : "";
      $("score-" + s).textContent = (s === r.real ? "REAL" : "FAKE") + (p === null ? "" : " · model: " + Math.round(p * 100) + "% fake" + said);
    });
    let text = r.correct ? "Right! " : "Not quite. ";
    if (r.model_correct === true) text += "The model got it right too.";
    else if (r.model_correct === false) text += "The model was fooled.";
    else text += "The model's scores are not ready.";
    $("quiz-result").textContent = text;
    setScore(r.score);
    $("quiz-next").hidden = false;
    root.dataset.answered = String(r.score.rounds);
  }

  $("pick-a").addEventListener("click", () => pick("a"));
  $("pick-b").addEventListener("click", () => pick("b"));
  $("quiz-next").addEventListener("click", newRound);
  newRound();
})();
