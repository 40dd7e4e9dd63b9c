{#- Cross-database helpers. Models call these, never `if target.type`; each adapter's
    difference lives in its dispatched implementation. -#}

{#- Epoch seconds (bigint) of a timestamp or timestamptz. -#}
{% macro epoch_seconds(column) -%}
    {{ return(adapter.dispatch('epoch_seconds', 'antenna_elt')(column)) }}
{%- endmacro %}

{% macro default__epoch_seconds(column) -%}
    cast(extract(epoch from {{ column }}) as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro duckdb__epoch_seconds(column) -%}
    cast(epoch({{ column }}) as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro bigquery__epoch_seconds(column) -%}
    unix_seconds({{ column }})
{%- endmacro %}

{% macro spark__epoch_seconds(column) -%}
    unix_seconds({{ column }})
{%- endmacro %}


{#- An instant (timestamp with time zone) from epoch seconds: for filters on event time. -#}
{% macro epoch_to_instant(expression) -%}
    {{ return(adapter.dispatch('epoch_to_instant', 'antenna_elt')(expression)) }}
{%- endmacro %}

{% macro default__epoch_to_instant(expression) -%}
    to_timestamp({{ expression }})
{%- endmacro %}

{% macro bigquery__epoch_to_instant(expression) -%}
    timestamp_seconds({{ expression }})
{%- endmacro %}

{% macro spark__epoch_to_instant(expression) -%}
    timestamp_seconds({{ expression }})
{%- endmacro %}


{#- A UTC timestamp without time zone from epoch seconds: the marts' window starts. -#}
{% macro epoch_to_timestamp(expression) -%}
    {{ return(adapter.dispatch('epoch_to_timestamp', 'antenna_elt')(expression)) }}
{%- endmacro %}

{% macro default__epoch_to_timestamp(expression) -%}
    (to_timestamp({{ expression }}) at time zone 'UTC')
{%- endmacro %}

{% macro duckdb__epoch_to_timestamp(expression) -%}
    make_timestamp(cast({{ expression }} as {{ dbt.type_bigint() }}) * 1000000)
{%- endmacro %}

{% macro bigquery__epoch_to_timestamp(expression) -%}
    timestamp_seconds({{ expression }})
{%- endmacro %}

{#- Spark's timestamp is an instant shown in the session time zone, UTC in the profile. -#}
{% macro spark__epoch_to_timestamp(expression) -%}
    timestamp_seconds({{ expression }})
{%- endmacro %}


{#- Start (epoch seconds) of the bucket of `seconds` that holds `epoch`: integer arithmetic,
    identical on every engine (date_bin / time_bucket / div would each round their own way). -#}
{% macro bucket_epoch(epoch, seconds) -%}
    ({{ epoch }} - mod({{ epoch }}, {{ seconds }}))
{%- endmacro %}


{#- Window length in seconds (var window_minutes). -#}
{% macro window_seconds() -%}
    {{ var('window_minutes') * 60 }}
{%- endmacro %}


{#- A bigint sum: DuckDB's sum(bigint) is a HUGEINT, which a contract would refuse. -#}
{% macro sum_bigint(expression) -%}
    cast(sum({{ expression }}) as {{ dbt.type_bigint() }})
{%- endmacro %}


{#- The long `timestamp, id, value, type` shape of the original exercise's serving tables. -#}
{% macro long_shape(relation, timestamp_column, id_column, value_column, type_name) -%}
    select
        {{ timestamp_column }} as {{ adapter.quote('timestamp') }},
        cast({{ id_column }} as {{ dbt.type_string() }}) as id,
        cast({{ value_column }} as {{ dbt.type_bigint() }}) as value,
        cast('{{ type_name }}' as {{ dbt.type_string() }}) as type
    from {{ relation }}
{%- endmacro %}


{#- A double-precision float: dbt.type_float() is a 4-byte FLOAT on DuckDB. -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'antenna_elt')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro bigquery__type_double() -%}
    float64
{%- endmacro %}

{% macro spark__type_double() -%}
    double
{%- endmacro %}


{#- How an incremental mart is partitioned where the incremental strategy needs it: on
    Spark, insert_overwrite replaces the partitions the increment produces, so each mart is
    partitioned by the bucket its increment always rebuilds whole (its window or hour).
    Elsewhere none (delete+insert and merge work on the unique key). -#}
{% macro ingest_partition_by(column) -%}
    {{ return(adapter.dispatch('ingest_partition_by', 'antenna_elt')(column)) }}
{%- endmacro %}

{% macro default__ingest_partition_by(column) -%}
    {{ return(none) }}
{%- endmacro %}

{% macro spark__ingest_partition_by(column) -%}
    {{ return([column]) }}
{%- endmacro %}
