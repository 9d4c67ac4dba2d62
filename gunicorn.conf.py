"""gunicorn settings, read by ``gunicorn run:app`` started in this directory (make run).

limit_request_line: the longest request line gunicorn reads (8190 is its maximum
short of "unlimited"). The app itself refuses request targets over MAX_URL_LENGTH
(8000, config.py) with a Chinese 414 page; only a line over 8190 bytes still gets
gunicorn's own (English) "Request Line is too large" answer.
"""
limit_request_line = 8190
