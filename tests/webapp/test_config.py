from __future__ import annotations

import pytest

from webapp import create_app
from webapp.config import ConfigError, config_from_env, finish_config


def test_env_values_are_typed_and_derived():
    config = config_from_env(
        {
            "UNMASK_MAX_UPLOAD_MB": "7",
            "UNMASK_ALLOWED_URL_HOSTS": " YouTube.com, 127.0.0.1 ,",
            "UNMASK_RETENTION_HOURS": "0.5",
            "UNMASK_SECRET_KEY": "k",
            "REDIS_URL": "redis://example:6379/3",
        }
    )
    finish_config(config)
    assert config["MAX_CONTENT_LENGTH"] > 7 * 1024 * 1024
    assert config["ALLOWED_URL_HOSTS"] == ["youtube.com", "127.0.0.1"]
    assert config["CELERY"]["broker_url"] == "redis://example:6379/3"
    assert config["CELERY"]["result_expires"] == 1800
    assert config["CELERY"]["task_time_limit"] > config["CELERY"]["task_soft_time_limit"]


def test_bad_number_names_the_variable():
    with pytest.raises(ConfigError, match="UNMASK_MAX_UPLOAD_MB"):
        config_from_env({"UNMASK_MAX_UPLOAD_MB": "lots"})


def test_no_default_secret_outside_local_use(tmp_path, monkeypatch):
    monkeypatch.delenv("UNMASK_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="UNMASK_SECRET_KEY"):
        create_app({"DATA_DIR": str(tmp_path)})
    assert create_app({"DATA_DIR": str(tmp_path), "LOCAL": True}).secret_key
    assert create_app({"DATA_DIR": str(tmp_path), "SECRET_KEY": "s3cret"}).secret_key == "s3cret"


def test_test_config_overrides_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("UNMASK_DATA_DIR", "/nonexistent/elsewhere")
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "d")})
    assert app.config["DATA_DIR"] == str(tmp_path / "d")
    assert app.config["QUIZ_DIR"] == str(tmp_path / "d" / "quiz")


def test_behind_a_proxy_and_https(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "PROXY_HOPS": 1, "SECURE_COOKIES": True})
    assert app.config["SESSION_COOKIE_SECURE"] is True
    response = app.test_client().get("/api/v1/csrf", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_dying_worker_hands_its_job_back(tmp_path):
    celery = create_app({"TESTING": True, "DATA_DIR": str(tmp_path)}).config["CELERY"]
    assert celery["task_acks_late"] and celery["task_reject_on_worker_lost"]
    assert celery["worker_prefetch_multiplier"] == 1
    assert celery["broker_transport_options"]["visibility_timeout"] > celery["task_time_limit"]
