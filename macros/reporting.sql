{#- Helpers of the reporting models (models/reporting): what a dashboard shows is computed
    here, once, on every target, instead of in each BI tool's own SQL. -#}

{#- True for the rows of the last `minutes` of data in `relation`: those whose
    `timestamp_column` is later than the newest one minus `minutes`. "The last hour" is
    counted back from the newest data, not from the wall clock, so a simulated or delayed
    feed shows like a live one (with 5-minute windows and 60 minutes: the newest 12). -#}
{% macro within_last_minutes_of_data(timestamp_column, relation, minutes) -%}
    {{ timestamp_column }} > (
        select cast({{ dbt.dateadd('minute', -1 * minutes, 'max(' ~ timestamp_column ~ ')') }} as {{ dbt.type_timestamp() }})
        from {{ relation }}
    )
{%- endmacro %}


{#- What a person reads for an antenna: `antenna ` and the first 8 characters of its id. -#}
{% macro antenna_label(antenna_id) -%}
    {{ dbt.concat(["'antenna '", 'substr(' ~ antenna_id ~ ', 1, 8)']) }}
{%- endmacro %}


{#- A timestamp as `YYYY-MM-DD HH:MI` text (UTC): an axis label that sorts as it reads. -#}
{% macro minute_label(timestamp_expression) -%}
    {{ return(adapter.dispatch('minute_label', 'antenna_elt')(timestamp_expression)) }}
{%- endmacro %}

{% macro default__minute_label(timestamp_expression) -%}
    to_char({{ timestamp_expression }}, 'YYYY-MM-DD HH24:MI')
{%- endmacro %}

{% macro duckdb__minute_label(timestamp_expression) -%}
    strftime({{ timestamp_expression }}, '%Y-%m-%d %H:%M')
{%- endmacro %}

{% macro bigquery__minute_label(timestamp_expression) -%}
    format_timestamp('%Y-%m-%d %H:%M', {{ timestamp_expression }})
{%- endmacro %}

{% macro spark__minute_label(timestamp_expression) -%}
    date_format({{ timestamp_expression }}, 'yyyy-MM-dd HH:mm')
{%- endmacro %}
