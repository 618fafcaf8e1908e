// Live progress on a training run's admin page: poll the staff JSON API while the run is
// queued or running, update the bar, and reload the page once it ends (for the final
// metrics, gate reasons and loss curve). No build step; loaded as a module.

const POLL_MS = 2000;
const MAX_FAILURES = 5;
const OPEN = new Set(["queued", "running"]);

function formatDuration(seconds) {
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds % 60);
  return minutes ? `${minutes} min ${rest} s` : `${rest} s`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function render(box, run) {
  const bar = box.querySelector("progress");
  const text = box.querySelector("[data-progress-text]");
  const loss = box.querySelector("[data-progress-loss]");
  const share = run.total_steps > 0 ? Math.round((100 * run.step) / run.total_steps) : 0;
  if (run.total_steps > 0) {
    bar.max = run.total_steps;
    bar.value = run.step;
    bar.textContent = `${share}%`;
  }
  // Outside its steps a run says which phase it is in (learning/run_progress.py), with that
  // phase's progress and time left; during them, the steps and their time left.
  const inSteps = run.total_steps > 0 && run.step > 0 && run.step < run.total_steps;
  if (run.status === "queued") {
    text.textContent = "waiting for a worker";
  } else if (run.phase_label && run.phase !== "training" && !inSteps) {
    const counted = run.phase_total > 0 ? ` ${run.phase_done}/${run.phase_total}` : "";
    const left = run.phase_seconds_left === null || run.phase_seconds_left === undefined
      ? ""
      : `, about ${formatDuration(run.phase_seconds_left)} left`;
    const label = run.phase_label[0].toUpperCase() + run.phase_label.slice(1);
    text.textContent = `${label}${counted}${left}`;
  } else if (run.total_steps > 0) {
    const left = run.seconds_left === null || run.seconds_left === undefined
      ? ""
      : `, about ${formatDuration(run.seconds_left)} left`;
    text.textContent = `${run.step} / ${run.total_steps} steps (${share}%${left})`;
  } else {
    text.textContent = "preparing";
  }
  loss.textContent = run.loss === null ? "" : `loss ${Number(run.loss).toPrecision(4)}`;
}

function announce(box, message) {
  const region = box.querySelector("[data-progress-status]");
  if (region) region.textContent = message;
}

async function follow(box) {
  let status = box.dataset.status;
  let failures = 0;
  for (;;) {
    await sleep(POLL_MS);
    let run;
    try {
      const response = await fetch(box.dataset.pollUrl, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      run = await response.json();
      failures = 0;
    } catch (error) {
      failures += 1;
      if (failures >= MAX_FAILURES) {
        announce(box, "Live updates stopped; reload the page to see the latest progress.");
        return;
      }
      continue;
    }
    render(box, run);
    if (run.status !== status) {
      status = run.status;
      announce(box, `Run ${run.id} is ${status}.`);
    }
    if (!OPEN.has(run.status)) {
      window.location.reload();
      return;
    }
  }
}

for (const box of document.querySelectorAll(".run-progress[data-poll-url]")) {
  follow(box);
}
