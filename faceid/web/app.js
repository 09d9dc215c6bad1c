// faceid's page: plain ES module, no build step, talks to the same JSON API as any client.
// Text from the server is always set with textContent, never parsed as HTML.

const $ = (id) => document.getElementById(id);
const KEY = "faceid-key";
let needsKey = false;

// -- the API ---------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = sessionStorage.getItem(KEY);
  if (key) headers.set("Authorization", `Bearer ${key}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    showKeyForm();
  }
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      /* not JSON */
    }
    throw new ApiError(response.status, (body && body.error) || `${response.status} ${response.statusText}`, body);
  }
  return response;
}

const json = async (path, options) => (await api(path, options)).json();

async function imageUrl(path) {
  // <img src> cannot send the key: fetch the image with it and show a blob.
  const blob = await (await api(path)).blob();
  return URL.createObjectURL(blob);
}

// -- messages and the key --------------------------------------------------------------------------

function say(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

function showKeyForm() {
  $("key-form").hidden = false;
  $("key-input").focus();
}

$("key").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key-input").value.trim());
  $("key-input").value = "";
  try {
    await json("/v1/people");
    $("key-form").hidden = true;
    say("");
    route();
  } catch (e) {
    say(e.message);
  }
});

// -- views -----------------------------------------------------------------------------------------

const VIEWS = ["identify", "people", "review"];

function route() {
  const wanted = location.hash.slice(1);
  const view = VIEWS.includes(wanted) ? wanted : "identify";
  for (const name of VIEWS) {
    $(name).hidden = name !== view;
    $(`tab-${name}`).classList.toggle("active", name === view);
  }
  if (view === "people") loadPeople().catch((e) => say(e.message));
  if (view === "review") loadGroups().catch((e) => say(e.message));
}

window.addEventListener("hashchange", route);

// -- identify --------------------------------------------------------------------------------------

function labelOf(face) {
  if (face.status === "known") return face.name;
  if (face.status === "ambiguous") return `ambiguous: ${face.candidates.map((c) => c.name).slice(0, 2).join(" or ")}?`;
  return "unknown";
}

async function identify(file) {
  say("");
  $("identify-caption").textContent = `Looking at ${file.name}…`;
  $("identify-result").hidden = false;
  $("identify-faces").replaceChildren();
  $("identify-image").removeAttribute("src");
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const result = await json("/v1/identify?annotate=true", { method: "POST", body: form });
    $("identify-image").src = await imageUrl(result.annotated);
    const n = result.faces.length;
    $("identify-caption").textContent =
      `${result.image}: ${n} face${n === 1 ? "" : "s"} (threshold ${result.threshold.toFixed(2)}, ${result.threshold_source})`;
    const list = $("identify-faces");
    for (const face of result.faces) {
      const item = document.createElement("li");
      item.className = `face ${face.status}`;
      const name = document.createElement("strong");
      name.textContent = labelOf(face);
      const detail = document.createElement("span");
      detail.className = "muted";
      const closest = face.status !== "known" && face.candidates.length ? `, closest ${face.candidates[0].name}` : "";
      detail.textContent = ` similarity ${face.similarity.toFixed(2)}${closest}`;
      item.append(name, detail);
      list.append(item);
    }
    if (!n) {
      const item = document.createElement("li");
      item.className = "muted";
      item.textContent = "No face found in this photo.";
      list.append(item);
    }
  } catch (e) {
    $("identify-result").hidden = true;
    say(e.message);
  }
}

$("identify-file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) identify(file);
  event.target.value = "";
});

const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) identify(file);
});

// -- people ----------------------------------------------------------------------------------------

// A person's URL: the name percent-encoded whole ('/' as %2F, and '%', '?', '#'), which the API's
// routes take back apart. "." and ".." alone cannot be sent: every browser folds such a segment away.
function personUrl(name) {
  if (name === "." || name === "..") throw new Error(`the name '${name}' cannot be used in a URL path; choose another`);
  return `/v1/people/${encodeURIComponent(name)}`;
}

async function loadPeople() {
  const people = await json("/v1/people");
  const names = $("people-names");
  names.replaceChildren(
    ...people.map((p) => {
      const option = document.createElement("option");
      option.value = p.name;
      return option;
    }),
  );
  $("people-empty").hidden = people.length > 0;
  // a name no URL can reach (made with the command line) is listed without its faces
  const unreachable = (p) => ({ name: p.name, created_at: "", faces: [] });
  const details = await Promise.all(people.map((p) => (/^\.\.?$/.test(p.name) ? unreachable(p) : json(personUrl(p.name)))));
  $("people-list").replaceChildren(...details.map(personCard));
}

function personCard(person) {
  const card = $("person-card").content.firstElementChild.cloneNode(true);
  card.dataset.name = person.name;
  card.querySelector(".person-name").textContent = person.name;
  const n = person.faces.length;
  card.querySelector(".person-count").textContent = `${n} face${n === 1 ? "" : "s"}`;
  const thumbs = card.querySelector(".thumbs");
  for (const face of person.faces) {
    const figure = document.createElement("figure");
    figure.className = "thumb";
    const img = document.createElement("img");
    img.alt = `${person.name}, from ${face.image || "a photo"}`;
    img.title = `${face.image || ""} (face ${face.id})`;
    imageUrl(face.thumbnail).then((url) => (img.src = url), () => img.classList.add("missing"));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove-face";
    remove.title = "Remove this face";
    remove.textContent = "×";
    remove.addEventListener("click", async () => {
      if (!(await confirmed(`Remove this face of ${person.name}? It is deleted from the gallery for good.`))) return;
      try {
        await json(`/v1/faces/${face.id}`, { method: "DELETE" });
        say(`Removed a face of ${person.name}.`, "ok");
        await loadPeople();
      } catch (e) {
        say(e.message);
      }
    });
    figure.append(img, remove);
    thumbs.append(figure);
  }
  const form = card.querySelector(".rename-form");
  const input = card.querySelector(".rename-input");
  card.querySelector(".rename").addEventListener("click", () => {
    form.hidden = false;
    input.value = person.name;
    input.focus();
  });
  card.querySelector(".rename-cancel").addEventListener("click", () => (form.hidden = true));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const renamed = await json(personUrl(person.name), {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: input.value }),
      });
      say(`Renamed ${person.name} to ${renamed.name}.`, "ok");
      await loadPeople();
    } catch (e) {
      say(e.message);
    }
  });
  card.querySelector(".remove").addEventListener("click", async () => {
    const faces = n === 1 ? "their only face" : n === 0 ? "their record" : `all ${n} of their faces`;
    const what = `Remove ${person.name} and ${faces}? They are deleted from the gallery for good.`;
    if (!(await confirmed(what))) return;
    try {
      const removed = await json(personUrl(person.name), { method: "DELETE" });
      say(`Removed ${removed.removed} (${removed.faces} face${removed.faces === 1 ? "" : "s"}).`, "ok");
      await loadPeople();
    } catch (e) {
      say(e.message);
    }
  });
  return card;
}

function confirmed(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

// -- review of unknown faces ----------------------------------------------------------------------

async function loadGroups() {
  const [groups, people] = await Promise.all([json("/v1/clusters"), json("/v1/people")]);
  $("people-names").replaceChildren(
    ...people.map((p) => {
      const option = document.createElement("option");
      option.value = p.name;
      return option;
    }),
  );
  $("review-empty").hidden = groups.length > 0;
  $("review-list").replaceChildren(...groups.map(groupCard));
}

function groupCard(group) {
  const card = $("group-card").content.firstElementChild.cloneNode(true);
  card.dataset.group = group.cluster;
  card.querySelector(".group-title").textContent = `Group ${group.cluster}`;
  const n = group.faces.length;
  card.querySelector(".group-count").textContent = `${n} face${n === 1 ? "" : "s"}`;
  const thumbs = card.querySelector(".thumbs");
  for (const face of group.faces) {
    const figure = document.createElement("figure");
    figure.className = "thumb";
    figure.dataset.face = face.id;
    const img = document.createElement("img");
    img.alt = `an unknown face, from ${face.image || "a photo"}`;
    img.title = `${face.image || ""} (face ${face.id})`;
    imageUrl(face.thumbnail).then((url) => (img.src = url), () => img.classList.add("missing"));
    const out = document.createElement("button");
    out.type = "button";
    out.className = "remove-face take-out";
    out.title = "Not the same person: take this face out of the group";
    out.textContent = "×";
    out.addEventListener("click", async () => {
      try {
        await json(`/v1/faces/${face.id}/move`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ name: null }),
        });
        say(`Took face ${face.id} out of group ${group.cluster}; it will not be grouped with these faces again.`, "ok");
        await loadGroups();
      } catch (e) {
        say(e.message);
      }
    });
    figure.append(img, out);
    thumbs.append(figure);
  }
  const form = card.querySelector(".name-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = card.querySelector(".name-input").value.trim();
    try {
      personUrl(name); // a name no URL can reach is refused here, as the API would
      const named = await json(`/v1/clusters/${group.cluster}/name`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name }),
      });
      const k = named.faces.length;
      const out = named.kept_out.length ? ` (${named.kept_out.length} left unknown: moved out of ${named.person} before)` : "";
      say(`Named group ${group.cluster}: ${k} face${k === 1 ? "" : "s"} of ${named.person}${named.new_person ? ", newly enrolled" : ""}${out}.`, "ok");
      await loadGroups();
    } catch (e) {
      say(e.message);
    }
  });
  return card;
}

// -- enrolment -------------------------------------------------------------------------------------

const SEVERAL = / faces found;/;

function report(results) {
  // One line per photo, in the API's words; a photo with several faces gets the face chooser instead.
  const list = $("enrol-results");
  const items = results.map((r) => {
    const item = document.createElement("li");
    item.className = r.status;
    item.textContent = SEVERAL.test(r.message)
      ? `${r.message.split(";")[0]}: choose the face below`
      : `${r.status}: ${r.message}`;
    list.append(item);
    return item;
  });
  $("enrol-report").hidden = false;
  return items;
}

async function enrolFiles(name, files, params = "") {
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  try {
    return (await json(`${personUrl(name)}/faces${params}`, { method: "POST", body: form })).results;
  } catch (e) {
    if (e.body && e.body.results) return e.body.results; // every photo failed: the report says why
    throw e;
  }
}

$("enrol").addEventListener("submit", async (event) => {
  event.preventDefault();
  say("");
  const name = $("enrol-name").value.trim();
  const files = [...$("enrol-files").files];
  $("enrol-results").replaceChildren();
  $("chooser").hidden = true;
  try {
    const results = await enrolFiles(name, files);
    const items = report(results);
    // Photos with several faces: let the person choose which face is theirs, one photo at a time.
    for (const [i, r] of results.entries()) {
      if (r.status === "failed" && SEVERAL.test(r.message)) {
        const chosen = await choose(name, files[i]);
        items[i].textContent = chosen ? "" : `skipped: ${r.message.split(";")[0]}`;
        if (chosen) items[i].remove();
      }
    }
    $("enrol-files").value = "";
    if (results.some((r) => r.status === "added")) $("enrol-name").value = "";
    await loadPeople();
  } catch (e) {
    say(e.message);
  }
});

async function choose(name, file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const found = await json("/v1/identify", { method: "POST", body: form });
  const image = $("chooser-image");
  image.src = URL.createObjectURL(file);
  await image.decode().catch(() => {});
  $("chooser-text").textContent = `${file.name} shows ${found.faces.length} faces: click ${name}'s face.`;
  const boxes = $("chooser-boxes");
  boxes.replaceChildren();
  $("chooser").hidden = false;
  return new Promise((resolve) => {
    const done = (results) => {
      $("chooser").hidden = true;
      if (results) report(results);
      resolve(Boolean(results));
    };
    for (const face of found.faces) {
      const [x, y, w, h] = face.box;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "face-box";
      button.title = face.status === "known" ? `looks like ${face.name}` : "choose this face";
      Object.assign(button.style, {
        left: `${(100 * x) / found.width}%`,
        top: `${(100 * y) / found.height}%`,
        width: `${(100 * w) / found.width}%`,
        height: `${(100 * h) / found.height}%`,
      });
      button.addEventListener("click", async () => {
        try {
          done(await enrolFiles(name, [file], `?box=${face.box.join(",")}`));
        } catch (e) {
          say(e.message);
          done(null);
        }
      });
      boxes.append(button);
    }
    $("chooser-cancel").onclick = () => done(null);
  });
}

// -- start -----------------------------------------------------------------------------------------

async function start() {
  try {
    const health = await (await fetch("/healthz")).json();
    needsKey = health.auth;
    $("who").textContent = health.model ? `model ${health.model}` : "";
  } catch (e) {
    say(`cannot reach the server (${e.message})`);
  }
  if (needsKey && !sessionStorage.getItem(KEY)) showKeyForm();
  route();
}

start();
