// The header: shown once signed in, with only the views the token may use.
import { me, signOut, token, showProblem } from "./api.js";

document.getElementById("sign-out").addEventListener("click", signOut);

if (token() && document.body.dataset.page !== "sign-in") {
  me()
    .then((who) => {
      for (const link of document.querySelectorAll("#nav [data-needs]")) {
        link.hidden = !who.can[link.dataset.needs];
      }
      document.getElementById("who").textContent = who.name;
      document.getElementById("nav").hidden = false;
    })
    .catch(showProblem);
}
