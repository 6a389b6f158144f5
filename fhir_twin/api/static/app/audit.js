// audit page: being built.
import "./api.js";
