"""The API's rules around one analysis: the check order of a request, its parameters, quota
taken and refunded, stored results. Imports the pipeline and the store; never HTTP."""
