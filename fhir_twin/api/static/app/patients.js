// patients page: being built.
import "./api.js";
