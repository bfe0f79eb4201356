"""GET /health: the API and its database answer. No auth."""

from shared import db
from shared.http.app import create_app
from shared.http.lambda_entry import lambda_handler
from shared.http.problems import problem_responses
from shared.models import Health

app = create_app("Health")


@app.get("/health", response_model=Health, responses=problem_responses(503), operation_id="health", tags=["health"])
def health() -> Health:
    db.ping()
    return Health(status="ok", database="ok")


handler = lambda_handler(app)
