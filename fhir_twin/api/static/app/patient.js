// patient page: being built.
import "./api.js";
