{#- The rows of `model` are unique over `combination_of_columns` (dbt-utils' test of the
    same name, which cannot be installed here). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{#- a name written quoted in the YAML ('"timestamp"') is quoted the adapter's way (Spark's
    double quotes make a string literal) -#}
{%- set columns = [] -%}
{%- for column in combination_of_columns -%}
    {%- do columns.append(adapter.quote(column.strip('"')) if column.startswith('"') else column) -%}
{%- endfor %}

with

counted as (

    select
        {{ columns | join(', ') }},
        count(*) as copies

    from {{ model }}
    group by {{ columns | join(', ') }}

)

select * from counted
where copies > 1

{% endtest %}
