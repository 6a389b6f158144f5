// The header: shown once signed in, with only the views the token may use.
import { landing, me, signOut, token, showProblem } from "./api.js";

document.getElementById("sign-out").addEventListener("click", signOut);

if (token() && document.body.dataset.page !== "sign-in") {
  me()
    .then((who) => {
      for (const link of document.querySelectorAll("#nav [data-needs]")) {
        link.hidden = !who.can[link.dataset.needs];
      }
      // The name leads to the token's first view: an auditor's is the audit trail, not the list.
      const home = landing(who);
      if (home) document.querySelector(".brand").setAttribute("href", home);
      document.getElementById("who").textContent = who.patient ? `${who.name} (patient ${who.patient})` : who.name;
      document.getElementById("nav").hidden = false;
    })
    .catch(showProblem);
}
