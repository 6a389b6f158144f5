// Sign-in with an API token: kept in this tab's session, checked against /twin/me, then the
// first view the token may use.
import { keepToken, landing, me, showProblem, clearProblem } from "./api.js";

const form = document.getElementById("sign-in-form");
if (new URLSearchParams(location.search).has("expired")) {
  showProblem("The server refused the token (expired, revoked or unknown): sign in again.");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearProblem();
  const secret = form.elements.token.value.trim();
  form.elements.token.value = "";
  if (!secret) return;
  keepToken(secret);
  try {
    const who = await me();
    const next = landing(who);
    if (next) location.assign(next);
    else showProblem("This token may read neither patients nor the audit trail.");
  } catch (error) {
    showProblem(error);
  }
});
