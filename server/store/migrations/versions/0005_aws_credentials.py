"""AWS-style credentials of keys, for the Rekognition dialect's signed requests: an access key
id, the key it belongs to, and the secret access key encrypted with the server's credentials
key (server/store/aws_credentials.py; never in clear).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aws_credentials",
        sa.Column("access_key_id", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("access_key_id"),
    )
    op.create_index("ix_aws_credentials_key_id", "aws_credentials", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_aws_credentials_key_id", table_name="aws_credentials")
    op.drop_table("aws_credentials")
