// Does not compile: `undeclared_scale` is never declared.
__kernel void broken(__global float* y)
{
    y[get_global_id(0)] *= undeclared_scale;
}
