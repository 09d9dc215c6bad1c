// faceid's page: plain ES module, no build step, talks to the same JSON API as any client.
// Text from the server is always set with textContent, never parsed as HTML.

const $ = (id) => document.getElementById(id);
const KEY = "faceid-key";
let needsKey = false;
let scope = "admin"; // what the key in use may do: "admin" or "read-only" (GET /v1/key)

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
    showKeyForm("This server needs an API key.");
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

// Every message goes next to what caused it: a slot (a .message element) of the form, card or view.
function say(slot, text, kind = "error") {
  if (!slot) return;
  slot.textContent = text;
  slot.className = `message ${kind}`;
  slot.hidden = !text;
}

const slotIn = (element) => element && element.querySelector(":scope > .message");

// After a list is drawn again: the message in the new card matching `selector`, else in `fallback`.
function sayAfter(selector, fallback, text, kind = "ok") {
  const card = document.querySelector(selector);
  say(card ? slotIn(card) : fallback, text, kind);
}

function showKeyForm(why) {
  $("key-form").hidden = false;
  $("key-forget").hidden = !sessionStorage.getItem(KEY);
  $("key-close").hidden = needsKey && !sessionStorage.getItem(KEY);
  if (why) say($("key-message"), why, "info");
  $("key-input").focus();
}

function showScope(who) {
  scope = who.scope;
  document.body.classList.toggle("read-only", scope !== "admin");
  const button = $("key-button");
  button.hidden = !needsKey;
  button.textContent = who.key ? `Key: ${who.key}${scope === "admin" ? "" : ` (${scope})`}` : "Key";
}

async function learnScope() {
  // which actions to offer: a read-only key is not shown Enrol, Rename or Remove
  showScope(await json("/v1/key"));
}

$("key-button").addEventListener("click", () => {
  if ($("key-form").hidden) showKeyForm("");
  else $("key-form").hidden = true;
});
$("key-close").addEventListener("click", () => ($("key-form").hidden = true));
$("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showScope({ key: null, scope: needsKey ? "read-only" : "admin" });
  showKeyForm("The key is forgotten: this tab sends none until you enter one.");
});

$("key").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key-input").value.trim());
  $("key-input").value = "";
  try {
    await learnScope();
    $("key-form").hidden = true;
    say($("key-message"), "");
    route();
  } catch (e) {
    say($("key-message"), e.message);
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
  if (view !== "identify") say($(`${view}-message`), ""); // what an earlier visit said is stale now
  if (needsKey && !sessionStorage.getItem(KEY)) return; // nothing to load until a key is given
  if (view === "people") loadPeople().catch((e) => say($("people-message"), e.message));
  if (view === "review") loadGroups().catch((e) => say($("review-message"), e.message));
}

window.addEventListener("hashchange", route);

// -- identify --------------------------------------------------------------------------------------

function labelOf(face) {
  if (face.status === "known") return face.name;
  if (face.status === "ambiguous") return `ambiguous: ${face.candidates.map((c) => c.name).slice(0, 2).join(" or ")}?`;
  return "unknown";
}

let shown = null; // the photo on display and its faces, for enlarging one

async function identify(file) {
  const slot = $("identify-message");
  say(slot, `Looking at ${file.name}…`, "info");
  $("identify-result").hidden = true;
  $("identify-faces").replaceChildren();
  $("identify-boxes").replaceChildren();
  const image = $("identify-image");
  image.removeAttribute("src");
  // the photo itself where this browser can show it (boxes and numbers drawn over it, legible at
  // any size); else (HEIC in most browsers) the server's annotated copy
  const local = URL.createObjectURL(file);
  const readable = await new Promise((resolve) => {
    const probe = new Image();
    probe.onload = () => resolve(true);
    probe.onerror = () => resolve(false);
    probe.src = local;
  });
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const remember = $("identify-remember").checked;
    const query = [readable ? "" : "annotate=true", remember ? "remember=true" : ""].filter(Boolean).join("&");
    const result = await json(`/v1/identify${query ? `?${query}` : ""}`, { method: "POST", body: form });
    image.src = readable ? local : await imageUrl(result.annotated);
    await image.decode().catch(() => {});
    shown = { result, width: result.width || image.naturalWidth, height: result.height || image.naturalHeight };
    const n = result.faces.length;
    $("identify-caption").textContent =
      `${result.image}: ${n} face${n === 1 ? "" : "s"} (threshold ${result.threshold.toFixed(2)}, ${result.threshold_source}). Tap a face to enlarge it.`;
    const list = $("identify-faces");
    result.faces.forEach((face, i) => {
      list.append(faceItem(face, i + 1));
      $("identify-boxes").append(faceBox(face, i + 1));
    });
    if (!n) {
      const item = document.createElement("li");
      item.className = "muted";
      item.textContent = "No face found in this photo.";
      list.append(item);
    }
    $("identify-result").hidden = false;
    say(slot, "");
  } catch (e) {
    say(slot, e.message);
  }
}

function faceItem(face, number) {
  const item = document.createElement("li");
  item.className = `face ${face.status}`;
  item.dataset.face = number;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "face-open";
  button.title = "Enlarge this face";
  const badge = document.createElement("span");
  badge.className = "number";
  badge.textContent = number;
  const name = document.createElement("strong");
  name.textContent = labelOf(face);
  const detail = document.createElement("span");
  detail.className = "muted";
  const closest = face.status !== "known" && face.candidates.length ? `, closest ${face.candidates[0].name}` : "";
  const kept = face.kept_as != null ? ", kept for review" : "";
  detail.textContent = ` similarity ${face.similarity.toFixed(2)}${closest}${kept}`;
  button.append(badge, " ", name, detail);
  button.addEventListener("click", () => enlarge(face, number));
  item.append(button);
  return item;
}

function faceBox(face, number) {
  const [x, y, w, h] = face.box;
  const box = document.createElement("button");
  box.type = "button";
  box.className = `box ${face.status}`;
  box.dataset.face = number;
  box.setAttribute("aria-label", `face ${number}: ${labelOf(face)}`);
  // placed through the style object (CSSOM), which a Content-Security-Policy without
  // 'unsafe-inline' allows, unlike style attributes
  box.style.left = `${(100 * x) / shown.width}%`;
  box.style.top = `${(100 * y) / shown.height}%`;
  box.style.width = `${(100 * w) / shown.width}%`;
  box.style.height = `${(100 * h) / shown.height}%`;
  const badge = document.createElement("span");
  badge.className = "number";
  badge.textContent = number;
  box.append(badge);
  box.addEventListener("click", () => enlarge(face, number));
  return box;
}

function enlarge(face, number) {
  // the face with a margin, drawn from the photo on display at up to 320 CSS pixels a side
  const image = $("identify-image");
  const sx = image.naturalWidth / shown.width;
  const sy = image.naturalHeight / shown.height;
  const [x, y, w, h] = face.box;
  const side = Math.max(w, h) * 1.6;
  const left = Math.max(0, x + w / 2 - side / 2);
  const top = Math.max(0, y + h / 2 - side / 2);
  const canvas = $("face-zoom-canvas");
  const scale = window.devicePixelRatio || 1;
  canvas.width = canvas.height = Math.round(320 * scale);
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(image, left * sx, top * sy, side * sx, side * sy, 0, 0, canvas.width, canvas.height);
  const detail = face.status === "known" ? ` (similarity ${face.similarity.toFixed(2)})` : "";
  $("face-zoom-text").textContent = `${number}. ${labelOf(face)}${detail}`;
  $("face-zoom").showModal();
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
    remove.className = "remove-face admin-only";
    remove.title = "Remove this face";
    remove.textContent = "×";
    remove.addEventListener("click", async () => {
      if (!(await confirmed(`Remove this face of ${person.name}? It is deleted from the gallery for good.`))) return;
      try {
        await json(`/v1/faces/${face.id}`, { method: "DELETE" });
        await loadPeople();
        sayAfter(cardOf(person.name), $("people-message"), `Removed a face of ${person.name}.`);
      } catch (e) {
        say(slotIn(card), e.message);
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
      await loadPeople();
      sayAfter(cardOf(renamed.name), $("people-message"), `Renamed ${person.name} to ${renamed.name}.`);
    } catch (e) {
      say(slotIn(card), e.message);
    }
  });
  card.querySelector(".remove").addEventListener("click", async () => {
    const faces = n === 1 ? "their only face" : n === 0 ? "their record" : `all ${n} of their faces`;
    const what = `Remove ${person.name} and ${faces}? They are deleted from the gallery for good.`;
    if (!(await confirmed(what))) return;
    try {
      const removed = await json(personUrl(person.name), { method: "DELETE" });
      await loadPeople();
      say($("people-message"), `Removed ${removed.removed} (${removed.faces} face${removed.faces === 1 ? "" : "s"}).`, "ok");
    } catch (e) {
      say(slotIn(card), e.message);
    }
  });
  return card;
}

const cardOf = (name) => `.person[data-name="${CSS.escape(name)}"]`;

function confirmed(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

// -- review of unknown faces ----------------------------------------------------------------------

async function loadGroups() {
  const [listed, people, offers] = await Promise.all([
    json("/v1/clusters"),
    json("/v1/people"),
    json("/v1/suggestions").catch((e) => {
      // a gallery whose model has no measured suggest bar (409) still shows its groups
      if (e.status === 409) return [];
      throw e;
    }),
  ]);
  $("people-names").replaceChildren(
    ...people.map((p) => {
      const option = document.createElement("option");
      option.value = p.name;
      return option;
    }),
  );
  // the API lists the faces in no group last, as one entry with `cluster` null
  const groups = listed.filter((g) => g.cluster !== null);
  const loose = listed.find((g) => g.cluster === null);
  $("review-empty").hidden = groups.length > 0;
  $("review-list").replaceChildren(...groups.map(groupCard), ...(loose ? [looseCard(loose)] : []));
  $("suggest").hidden = offers.length === 0;
  $("suggest-list").replaceChildren(...offers.map(suggestCard));
}

function thumbOf(face, alt) {
  const img = document.createElement("img");
  img.alt = alt;
  img.title = `${face.image || ""} (face ${face.id})`;
  imageUrl(face.thumbnail).then((url) => (img.src = url), () => img.classList.add("missing"));
  return img;
}

const post = (path, body) =>
  json(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

// "Is this X?": a kept face whose best match is an enrolled person above the model's suggest bar.
function suggestCard(offer) {
  const card = $("suggest-card").content.firstElementChild.cloneNode(true);
  const face = offer.face;
  card.dataset.face = face.id;
  card.dataset.person = offer.person;
  card.querySelector(".thumb").replaceChildren(thumbOf(face, `a kept face that may be ${offer.person}`));
  const question = card.querySelector(".suggest-question");
  const who = document.createElement("strong");
  who.textContent = offer.person;
  question.append("Is this ", who, "?");
  const where = offer.cluster === null ? "in no group" : `in group ${offer.cluster}`;
  card.querySelector(".suggest-detail").textContent =
    `face ${face.id} from ${face.image || "a photo"}, ${where}; similarity ${offer.similarity.toFixed(2)}`;
  const answer = async (verb) => {
    try {
      const body = { name: offer.person, faces: [face.id] };
      await post(`/v1/suggestions/${verb}`, body);
      await loadGroups();
      const text =
        verb === "accept"
          ? `Face ${face.id} is now ${offer.person}'s.`
          : `Face ${face.id} is not ${offer.person}: it will not be offered as them again.`;
      say($("review-message"), text, "ok");
    } catch (e) {
      say(slotIn(card), e.message);
    }
  };
  card.querySelector(".accept").addEventListener("click", () => answer("accept"));
  card.querySelector(".reject").addEventListener("click", () => answer("reject"));
  return card;
}

// The kept faces in no group: shown, and named a few at a time (each one a move, as `faceid move`).
function looseCard(loose) {
  const card = $("loose-card").content.firstElementChild.cloneNode(true);
  card.dataset.group = "none";
  const n = loose.faces.length;
  card.querySelector(".group-count").textContent = `${n} face${n === 1 ? "" : "s"}`;
  const chosen = new Set();
  for (const face of loose.faces) {
    const figure = document.createElement("figure");
    figure.className = "thumb";
    figure.dataset.face = face.id;
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "choose";
    toggle.setAttribute("aria-pressed", "false");
    toggle.title = `Choose face ${face.id}`;
    toggle.append(thumbOf(face, `an unknown face in no group, from ${face.image || "a photo"}`));
    toggle.addEventListener("click", () => {
      if (chosen.has(face.id)) chosen.delete(face.id);
      else chosen.add(face.id);
      toggle.setAttribute("aria-pressed", String(chosen.has(face.id)));
    });
    figure.append(toggle);
    card.querySelector(".thumbs").append(figure);
  }
  card.querySelector(".name-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = card.querySelector(".name-input").value.trim();
    try {
      if (!chosen.size) throw new Error("choose the faces to name first (click them)");
      personUrl(name); // a name no URL can reach is refused here, as the API would
      let moved = 0;
      for (const id of chosen) moved += (await post(`/v1/faces/${id}/move`, { name })).moved.length;
      await loadGroups();
      say($("review-message"), `Named ${moved} face${moved === 1 ? "" : "s"} in no group as ${name}.`, "ok");
    } catch (e) {
      say(slotIn(card), e.message);
    }
  });
  return card;
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
    out.className = "remove-face take-out admin-only";
    out.title = "Not the same person: take this face out of the group";
    out.textContent = "×";
    out.addEventListener("click", async () => {
      try {
        await json(`/v1/faces/${face.id}/move`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ name: null }),
        });
        await loadGroups();
        const text = `Took face ${face.id} out of group ${group.cluster}; it will not be grouped with these faces again.`;
        sayAfter(`.group[data-group="${group.cluster}"]`, $("review-message"), text);
      } catch (e) {
        say(slotIn(card), e.message);
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
      await loadGroups();
      const text = `Named group ${group.cluster}: ${k} face${k === 1 ? "" : "s"} of ${named.person}${named.new_person ? ", newly enrolled" : ""}${out}.`;
      say($("review-message"), text, "ok");
    } catch (e) {
      say(slotIn(card), e.message);
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
  say($("enrol-message"), "");
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
    say($("enrol-message"), e.message);
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
          say($("enrol-message"), e.message);
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
    if (health.status === "loading") {
      // the server answers while its models load (503 "loading"): ask again shortly
      say($("identify-message"), "The server is loading its models…", "info");
      setTimeout(start, 2000);
      return;
    }
    say($("identify-message"), "");
    needsKey = health.auth;
    $("who").textContent = health.model ? `model ${health.model}` : "";
  } catch (e) {
    say($("identify-message"), `cannot reach the server (${e.message})`);
  }
  if (needsKey && !sessionStorage.getItem(KEY)) {
    showScope({ key: null, scope: "read-only" });
    showKeyForm("");
  } else {
    await learnScope().catch((e) => say($("key-message"), e.message));
  }
  route();
}

start();
